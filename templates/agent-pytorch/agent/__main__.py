"""``python -m agent``: what the Docker image runs."""

from agent.main import main

if __name__ == "__main__":
    main()
