"""dSFT/dDPO building blocks: data, models, the trainer setup, chat templates. Kept free of imports."""
