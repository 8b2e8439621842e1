"""Docker: the engine, the toolkit's images, image references, and building agent images."""
