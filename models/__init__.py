"""vae-sweep models: the VAE, its losses, schedules, metrics and data (no Optuna)."""
