"""Judging speech (``codec_bridge evaluate``): offline ASR (`asr`, with the Whisper weights
assembled by `whisper_weights`), speaker similarity (`speaker`), and the report that sets
original, resynthesis and synthesis side by side (`evaluate`). Nothing here is needed to
extract or decode."""
