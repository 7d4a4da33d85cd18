"""DTI-Sprites: unsupervised layered image decomposition into object prototypes.

Reference: Monnier, Vincent, Ponce, Aubry, "Unsupervised Layered Image Decomposition into
Object Prototypes", ICCV 2021 (arXiv 2104.14575).
"""

__version__ = "0.1.0"
