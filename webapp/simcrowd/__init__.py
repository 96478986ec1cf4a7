"""The simulated crowd: participants answering like an observer over real HTTP (``simulate_crowd``), and the
closed loop built on it (``closed_loop``). It may import crowd, lab, experiments and stimuli; nothing of the
site imports it."""
