"""Where things are kept: the database (``database``: URLs, ``open_storage``), the
storage made safe for many workers (``sweep_storage``, over ``retries`` through outages,
``locks`` and the full-disk ``reserve``), the image and checkpoint
stores (``stores``), a study's settings (``settings``), each trial's long values
(``trial_record``: config, history, kl_per_dim), and copying a study with its images
(``copying``).
"""
