"""Training of iCMFormer: object pool, augmentation, click simulation, loop with resume."""
