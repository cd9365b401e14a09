"""The built-in channel pool: public channels across ordinary interests.

It seeds an empty ``channels`` table on the daemon's first start (afterwards admins own the
table) and gives the sandbox gateway its default world. The shipped ``config.toml`` lists the
same entries under ``[[channels]]``; a test keeps the two equal.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

# A channel failing with the same code for this many sessions within a day is flagged.
CHANNEL_FLAG_SESSIONS: Final = 3
CHANNEL_FLAG_WINDOW: Final = timedelta(days=1)


def channel_flag(code: str, sessions: int, at: datetime) -> str | None:
    """The flag of a pool channel that failed with ``code`` for ``sessions`` sessions within
    ``CHANNEL_FLAG_WINDOW`` before ``at``; ``None`` while that is too few to flag it."""
    if sessions < CHANNEL_FLAG_SESSIONS:
        return None
    since = at - CHANNEL_FLAG_WINDOW
    return f"{code} for {sessions} sessions (since {since:%Y-%m-%d %H:%M}Z)"


# (username, title, category, description)
DEFAULT_POOL: Final[tuple[tuple[str, str, str, str], ...]] = (
    ("telegram", "Telegram News", "tech", "Official news about Telegram"),
    ("durov", "Durov's Channel", "tech", "Posts by Telegram's founder"),
    ("tginfo", "Telegram Info", "tech", "News and tips about Telegram features"),
    ("techcrunch", "TechCrunch", "tech", "Startup and technology news"),
    ("theverge", "The Verge", "tech", "Technology, science and culture"),
    ("bbcnews", "BBC News", "news", "World news from the BBC"),
    ("reuters", "Reuters", "news", "Breaking international news"),
    ("nytimes", "The New York Times", "news", "News and analysis"),
    ("economist", "The Economist", "business", "World affairs, business and finance"),
    ("bloomberg", "Bloomberg", "business", "Markets and business news"),
    ("nasa", "NASA", "science", "Space exploration and discovery"),
    ("natgeo", "National Geographic", "science", "Nature, science and exploration"),
    ("sciencealert", "ScienceAlert", "science", "Everyday science news"),
    ("python", "Python", "programming", "News and links for Python developers"),
    ("githubtrending", "GitHub Trending", "programming", "Repositories rising on GitHub"),
    ("lonelyplanet", "Lonely Planet", "travel", "Travel inspiration and guides"),
    ("foodnetwork", "Food Network", "food", "Recipes and cooking ideas"),
    ("bonappetit", "Bon Appetit", "food", "Recipes, cooking and food culture"),
    ("pitchfork", "Pitchfork", "music", "Music reviews and news"),
    ("rollingstone", "Rolling Stone", "music", "Music, film and culture"),
    ("espn", "ESPN", "sports", "Sports news and scores"),
    ("formula1", "Formula 1", "sports", "News from the world of F1"),
    ("moviesnews", "Movies News", "culture", "Film releases and reviews"),
    ("bookclub", "Book Club", "culture", "Books worth reading"),
)
