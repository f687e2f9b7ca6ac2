"""DAPT ("Decouple before Align"): masks, the masking dataset wrapper, visual triplets and the three losses.

- ``masks``: the precomputed mask store (DAPT-S) and the official release's layout / importer
- ``gradcam``: per-epoch Grad-CAM masks (DAPT-G)
- ``paired`` / ``wrapper``: the same geometric augmentation for image and mask; ``MaskingDataset``
- ``triplet``: (I, I_f, I_b) with the filling variants; ``losses``: L_f, L_b, L_v and Eq. 7
- ``background``: background vocabularies; ``config``: the ``cfg.DAPT`` node
- ``integration``: ``Decoupler`` and ``DAPTHook``, wired into ``PromptTrainer`` when ``DAPT.ENABLED``
"""
