"""The closed loop (``manage.py closed_loop``): judgments → export → fit → codec trained with the fitted DPL →
a second study that says whether the new codec is better (issue 15; bench/README.md "The loop closed").

On a scratch PostgreSQL database (created beside ``DATABASE_URL``'s, dropped at the end unless ``--keep``)
and a scratch MEDIA_ROOT, with the site's own commands and a simulated crowd over real HTTP:

1. study 1: triplets on crops of kodim01–16 (JPEG and WebP at several qualities), judged by a simulated
   observer whose weights are hidden from the fit: LPIPS-alex's lin weights, each multiplied by
   exp(σ·N(0,1)) with ``--seed``, on the real ImageNet AlexNet of ../shared/data/backbones/;
2. ``export_dataset`` → ``fit_dpl`` (train split, val split for early stopping) → ``score_metrics`` on the
   held-out test split: the fitted DPL against PSNR, SSIM, MS-SSIM and the observer's own metric (its
   2AFC score is the ceiling any metric can reach on these judgments, in expectation);
3. a small MSE base codec trained from random weights on kodim01–16, then two fine-tunes from it for the
   same number of steps, one with MSE and one with the fitted DPL, both with ``--target-bpp`` set to the
   base's training rate, so λ is chosen by the rate controller; their real-bitstream bpp on kodim17–24
   must be within 10 % of each other;
4. ``make_stimuli`` from both checkpoints and JPEG at their mean bpp (rate control) on kodim17–24; study 2
   (triplet mode) is every pair of the three per image, judged by the same observer; a copy of it judged by
   a PSNR observer (the control), and a pair-mode copy (no reference on the page; the simulated observer
   is given it) judged by the hidden observer;
5. per study, the probability that the DPL codec is preferred to the MSE codec, with a 95 % bootstrap
   interval over participants, and a JOD scale per codec (``learning.scaling``).

It prints each stage's figures and wall time and writes ``report.json`` and ``closed_loop.png``/``.svg``
to ``--out``. ``--small`` is the reduced version the slow test runs (fewer crops, judgments and steps).

Modules: ``config`` (sizes, paths, the stage timer), ``scratch`` (the scratch database and the process
that runs on it), ``studies`` (stages 1, 2, 4 and 5: crops, observer, studies, export, preference and
scale), ``codec_training`` (stage 3), ``figure`` (the plot), ``stages`` (the five stages in order).
"""
