"""Real-time side of Verity: the Socket.IO signaling server and its ASGI composition."""
