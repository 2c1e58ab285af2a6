"""diffusers pipelines of AsymK-Talker."""
