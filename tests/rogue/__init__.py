"""A deliberately rogue app: its ready() hook tries to publish, as the incident's start-up code did."""
