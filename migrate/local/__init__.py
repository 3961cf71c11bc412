"""Local harness: emulators, the demo, the sample data center and emulator-mode provisioning."""
