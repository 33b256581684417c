"""The segmentation network, its training recipe and its weights files (torch)."""

from stemunmix.nn.model_io import load_model, save_model
from stemunmix.nn.training import train
from stemunmix.nn.unet import DilatedUNet

__all__ = ["DilatedUNet", "load_model", "save_model", "train"]
