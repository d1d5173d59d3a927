// Anchor TU for the shared LibTorch precompiled header.
