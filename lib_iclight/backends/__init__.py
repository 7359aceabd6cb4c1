"""Per-WebUI model patching (AUTOMATIC1111, Forge 2, Forge Classic / reForge), and the UNet
patch, delivery probe and merge ledger they share."""
