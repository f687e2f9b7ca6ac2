"""UCF101 (middle frames), CoOp layout: $DATA/ucf101/{UCF-101-midframes,split_zhou_UCF101.json}
(fallback: ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt)."""
import os
import re

from dapt.data.base import Datum, split_trainval
from dapt.data.datasets._common import CoOpDataset, read_lines
from dapt.data.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class UCF101(CoOpDataset):
    dataset_dir = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
    num_classes_expected = 101
    readme_anchor = "ucf101"

    def build_split(self, rng):
        cname2lab = {}
        for line in read_lines(os.path.join(self.dataset_dir, "ucfTrainTestlist", "classInd.txt")):
            label, action = line.strip().split(" ")
            cname2lab[action] = int(label) - 1
        trainval = self.read_data(cname2lab, "trainlist01.txt")
        test = self.read_data(cname2lab, "testlist01.txt")
        train, val = split_trainval(trainval, rng=rng)
        return train, val, test

    def read_data(self, cname2lab, text_file):
        items = []
        for line in read_lines(os.path.join(self.dataset_dir, "ucfTrainTestlist", text_file)):
            action, filename = line.strip().split(" ")[0].split("/")
            renamed = "_".join(re.findall("[A-Z][^A-Z]*", action))  # ApplyEyeMakeup -> Apply_Eye_Makeup
            impath = os.path.join(self.image_dir, renamed, filename.replace(".avi", ".jpg"))
            items.append(Datum(impath=impath, label=cname2lab[action], classname=renamed))
        return items
