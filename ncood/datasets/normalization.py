"""ImageNet's per-channel statistics: the default normalization of every set read from files
(computing a large set's own would read it whole), of OpenOOD's ImageNet benchmarks and of
``--normalize imagenet``. No torch here: ``ncood plugins`` reads the protocol tables that use
them."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
