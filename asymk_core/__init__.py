"""AsymK-Talker method core: models, TRE, KCLG chunk loop, sampling, audio and video I/O.

Nothing here imports ComfyUI.
"""
