"""Drawing SportSim frames: a top-down pitch, two teams of numbered discs, a ball, a referee and a scoreboard.

Everything a question asks about is drawn large enough to read at 640×360: player numbers, the game clock
and score, a banner naming the event while it lasts, the card the referee holds up, a yellow ring round
the player the event is about. The banner carries a solid accent bar at a fixed place (``BANNER_ACCENT``)
so that a program, the oracle policy, can tell from the pixels whether a frame shows an event.
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PLAYER_RADIUS = 11
RING = 4  # the highlight ring's width round a player the event is about
SCOREBOARD_HEIGHT = 34
ACCENT_RGB = (255, 210, 0)
CARD_RGB = {"yellow": (255, 220, 0), "red": (230, 20, 20)}


def banner_accent(width: int, height: int) -> tuple[int, int, int, int]:
    """The box (x0, y0, x1, y1) of the banner's solid accent bar, in pixels of a width×height frame."""
    return (int(0.02 * width), int(0.84 * height), int(0.035 * width), int(0.97 * height))


def shows_banner(image: np.ndarray) -> bool:
    """Whether a frame (H×W×3 RGB) shows an event banner: its accent bar is there, in its colour."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = banner_accent(width, height)
    inner = image[y0 + 2:y1 - 2, x0 + 1:x1 - 1].reshape(-1, 3).astype(np.float64)
    if inner.size == 0:
        return False
    return bool(np.abs(inner.mean(axis=0) - ACCENT_RGB).max() < 40)


@functools.lru_cache(maxsize=8)
def font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=64)
def player_sprite(colour: tuple[int, int, int], number: int) -> Image.Image:
    """A disc in the team colour with the shirt number on it, in black or white, whichever reads better."""
    size = 2 * PLAYER_RADIUS + 2
    sprite = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(sprite)
    draw.ellipse((1, 1, size - 2, size - 2), fill=(*colour, 255), outline=(20, 20, 20, 255), width=1)
    ink = (0, 0, 0, 255) if sum(colour) > 450 else (255, 255, 255, 255)
    draw.text((size / 2, size / 2 + 0.5), str(number), font=font(13), fill=ink, anchor="mm")
    return sprite


@functools.lru_cache(maxsize=16)
def field_image(sport: str, width: int, height: int) -> Image.Image:
    """The empty pitch, court or table seen from above, below the scoreboard band."""
    image = Image.new("RGB", (width, height), (30, 30, 34))
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = field_box(width, height)
    line = (245, 245, 245)
    if sport == "soccer":
        stripe = (x1 - x0) / 10
        for i in range(10):
            shade = (46, 139, 62) if i % 2 else (52, 150, 68)
            draw.rectangle((x0 + i * stripe, y0, x0 + (i + 1) * stripe, y1), fill=shade)
        draw.rectangle((x0, y0, x1, y1), outline=line, width=2)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        draw.line((cx, y0, cx, y1), fill=line, width=2)
        draw.ellipse((cx - 30, cy - 30, cx + 30, cy + 30), outline=line, width=2)
        box_h, box_w = (y1 - y0) * 0.5, (x1 - x0) * 0.12
        draw.rectangle((x0, cy - box_h / 2, x0 + box_w, cy + box_h / 2), outline=line, width=2)
        draw.rectangle((x1 - box_w, cy - box_h / 2, x1, cy + box_h / 2), outline=line, width=2)
        for gx in (x0 - 8, x1):
            draw.rectangle((gx, cy - 22, gx + 8, cy + 22), fill=(230, 230, 230))
    elif sport == "basketball":
        draw.rectangle((x0, y0, x1, y1), fill=(196, 150, 98), outline=line, width=2)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        draw.line((cx, y0, cx, y1), fill=line, width=2)
        draw.ellipse((cx - 26, cy - 26, cx + 26, cy + 26), outline=line, width=2)
        key_h, key_w = (y1 - y0) * 0.34, (x1 - x0) * 0.18
        for side in (0, 1):
            kx = x0 if side == 0 else x1 - key_w
            draw.rectangle((kx, cy - key_h / 2, kx + key_w, cy + key_h / 2), fill=(170, 60, 50), outline=line, width=2)
            arc_x = x0 if side == 0 else x1
            r = (y1 - y0) * 0.45
            draw.arc((arc_x - r, cy - r, arc_x + r, cy + r), -90 if side == 0 else 90, 90 if side == 0 else 270,
                     fill=line, width=2)
            hoop_x = x0 + 14 if side == 0 else x1 - 14
            draw.ellipse((hoop_x - 7, cy - 7, hoop_x + 7, cy + 7), outline=(255, 110, 0), width=3)
    else:  # tennis, doubles, seen from above with the net across the middle
        draw.rectangle((x0 - 10, y0, x1 + 10, y1), fill=(70, 130, 180))
        draw.rectangle((x0, y0 + 10, x1, y1 - 10), fill=(50, 100, 160), outline=line, width=2)
        ally = (y1 - y0) * 0.12
        draw.line((x0, y0 + 10 + ally, x1, y0 + 10 + ally), fill=line, width=2)
        draw.line((x0, y1 - 10 - ally, x1, y1 - 10 - ally), fill=line, width=2)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        service = (x1 - x0) * 0.27
        draw.line((cx - service, y0 + 10 + ally, cx - service, y1 - 10 - ally), fill=line, width=2)
        draw.line((cx + service, y0 + 10 + ally, cx + service, y1 - 10 - ally), fill=line, width=2)
        draw.line((cx - service, cy, cx + service, cy), fill=line, width=2)
        draw.line((cx, y0, cx, y1), fill=(240, 240, 240), width=4)  # the net
    return image


def field_box(width: int, height: int) -> tuple[int, int, int, int]:
    """Where the playing area lies: below the scoreboard, above the banner, so a banner never hides a player."""
    return (int(0.05 * width), SCOREBOARD_HEIGHT + int(0.05 * height), int(0.95 * width), int(0.82 * height))


def draw_frame(
    sport: str,
    size: tuple[int, int],
    *,
    players: list[tuple[tuple[int, int, int], int, float, float]],
    ball: tuple[float, float],
    referee: tuple[float, float],
    scoreboard: str,
    highlight: tuple[float, float] | None = None,
    card: str | None = None,
    banner: tuple[str, str] | None = None,
) -> np.ndarray:
    """One frame as H×W×3 RGB. ``players`` are (colour, number, x, y); ``banner`` is (headline, detail)."""
    width, height = size
    image = field_image(sport, width, height).copy()
    draw = ImageDraw.Draw(image)
    if highlight is not None:
        hx, hy = highlight
        r = PLAYER_RADIUS + RING
        draw.ellipse((hx - r, hy - r, hx + r, hy + r), fill=(255, 235, 0))
    for colour, number, x, y in players:
        sprite = player_sprite(colour, number)
        image.paste(sprite, (int(x - sprite.width / 2), int(y - sprite.height / 2)), sprite)
    rx, ry = referee
    draw.rectangle((rx - 8, ry - 8, rx + 8, ry + 8), fill=(15, 15, 15), outline=(255, 255, 255), width=2)
    if card is not None:  # held up above the referee, big enough to see the colour at a glance
        draw.rectangle((rx - 10, ry - 44, rx + 10, ry - 14), fill=CARD_RGB[card], outline=(0, 0, 0), width=1)
    bx, by = ball
    draw.ellipse((bx - 5, by - 5, bx + 5, by + 5), fill=(255, 255, 255), outline=(0, 0, 0), width=2)
    draw.rectangle((0, 0, width, SCOREBOARD_HEIGHT), fill=(12, 12, 40))
    draw.text((width / 2, SCOREBOARD_HEIGHT / 2), scoreboard, font=font(18), fill=(255, 255, 255), anchor="mm")
    if banner is not None:
        x0, y0, x1, y1 = banner_accent(width, height)
        draw.rectangle((x0 - 4, y0 - 4, width - x0, y1 + 4), fill=(10, 10, 10))
        draw.rectangle((x0, y0, x1, y1), fill=ACCENT_RGB)
        draw.text((x1 + 10, y0 + 1), banner[0], font=font(17), fill=ACCENT_RGB)
        draw.text((x1 + 10, y0 + (y1 - y0) / 2 + 2), banner[1], font=font(15), fill=(255, 255, 255))
    return np.asarray(image)
