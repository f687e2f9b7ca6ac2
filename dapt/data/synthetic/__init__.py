"""Synthetic datasets generated on the fly (numpy + PIL): the embedded objects-on-scenes testbed."""
from dapt.data.synthetic.scenes import (BACKGROUNDS, COLORS, OBJECTS, add_scenes_config, dataset_folder_name,
                                        default_cache_root, generate_objects_on_scenes, read_scene_labels,
                                        render_background, render_object_mask, render_scene)

__all__ = [
    "BACKGROUNDS", "COLORS", "OBJECTS", "add_scenes_config", "dataset_folder_name", "default_cache_root",
    "generate_objects_on_scenes", "read_scene_labels", "render_background", "render_object_mask", "render_scene",
]
