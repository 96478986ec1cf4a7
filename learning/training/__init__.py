"""Learned-codec training with CompressAI: rate + λ·distortion (MSE, MS-SSIM or a DPL), DDP-ready."""
