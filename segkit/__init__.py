"""segkit: DeepLabV3+ on ADE20k with MosaicML's segmentation recipes."""
