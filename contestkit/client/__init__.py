"""The contest from an entrant's side: its API, the team's saved login, and the team registry."""
