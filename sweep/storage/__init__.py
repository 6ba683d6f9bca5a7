"""Where things are kept: the database (``database``: URLs, ``open_storage``), the
storage made safe for many workers (``sweep_storage``, over ``retries`` through outages,
``locks`` and the full-disk ``reserve``), a journal file on a shared file system
(``journal``), the image and checkpoint stores (``stores``), a study's settings
(``settings``), each trial's long values (``trial_record``: config, history, kl_per_dim),
copying a study with its images (``copying``), and a study's name as a file name (``names``).
"""
