"""The bridge between the env process and the agent: protocol, env side, agent side."""
