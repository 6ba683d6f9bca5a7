"""Where things are kept: the database (``database``: URLs, ``open_storage``), the
storage made safe for many workers (``sweep_storage``), the image and checkpoint
stores (``stores``), a study's settings (``settings``), and copying a study with
its images (``copying``).
"""
