"""The closed loop (``manage.py closed_loop``): judgments → export → fit → codec trained with the fitted DPL →
a second study that says whether the new codec is better (issue 15; bench/README.md "The loop closed").

On a scratch PostgreSQL database (created beside ``DATABASE_URL``'s, dropped at the end unless ``--keep``)
and a scratch MEDIA_ROOT, with the site's own commands and a simulated crowd over real HTTP:

1. study 1: triplets on crops of kodim01–16: JPEG at two qualities and JPEG, WebP, AVIF (and the base codec
   of step 3) at one matched rate, since cross-codec pairs at equal rate are what separate metrics; judged by
   a simulated hidden observer. By default it is outside the family the loop fits (``--observer
   out-of-family``: 0.5·LPIPS on the real VGG16 + 0.3·CIEDE2000 + 0.2·MS-SSIM, each term scaled by its
   spread over the trials; the fit never sees these weights nor this backbone); ``--observer alex-lin`` is
   the earlier in-family setting (LPIPS-alex's lin weights × exp(σ·N(0,1)) on the real AlexNet);
2. ``export_dataset`` → ``fit_dpl`` (alex, train split; val split for early stopping) → ``score_metrics``
   on the held-out test split beside PSNR, SSIM, MS-SSIM and the observer itself (its 2AFC score is the
   ceiling any metric can reach on these judgments, in expectation). μ of ``DPL + μ·MSE`` is chosen from
   study 1's judgments the weights were not fitted on, val and test (``learning.fitting.mixing``: 2AFC
   agreement, one-standard-error rule on paired differences, μ = 0 a candidate); study 2 never informs it;
3. fine-tunes of the base codec (``--base shared``: ../shared/data/codecs, hyperprior N=96 M=128 trained with
   the project's recipe; ``--base train``: a small one trained here first) for the same steps, side by side:
   MSE, the loop's recipe DPL + μ·MSE and, when μ > 0, the pure DPL, each with ``--target-bpp`` at the base's
   rate so λ is set by the rate controller; real-bitstream bpp on kodim17–24 within 10 % of each other;
4. ``make_stimuli`` from the checkpoints, JPEG and HEIC (HEVC intra, what BPG is: the strongest classical
   anchor here) at their mean bpp on kodim17–24; study 2 (triplet mode) is every pair per image, judged by
   the hidden observer; a copy judged by a PSNR observer (the control), and a pair-mode copy (no reference
   on the page; the simulated observer is given it) judged by the hidden observer;
5. per study, P(loop codec ≻ MSE codec), ≻ JPEG, ≻ HEIC and P(pure-DPL codec ≻ MSE codec), with 95 %
   bootstrap intervals over participants, and a JOD scale per codec (``learning.scaling``).

It prints each stage's figures and wall time and writes ``report.json`` and ``closed_loop.png``/``.svg``
to ``--out``. ``--small`` is the reduced version the slow test runs (fewer crops, judgments and steps).

Modules: ``config`` (sizes, paths, the stage timer), ``scratch`` (the scratch database and the process
that runs on it), ``studies`` (stages 1, 2, 4 and 5: crops, observer, studies, export, preference and
scale), ``codec_training`` (stage 3), ``figure`` (the plot), ``stages`` (the five stages in order).
"""
