"""Rate–distortion evaluation: encode at bpp targets, measure metrics, plot curves, BD-rate vs an anchor."""
