"""What-if replay: real or synthetic LLM traffic played through a simulated vLLM fleet."""
