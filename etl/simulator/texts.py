"""Word pools for generated calls and transcripts.

The phrases are chosen to break naive code: accents, CJK, emoji with skin tones and ZWJ sequences,
right-to-left scripts, embedded newlines, quotes, backslashes and markup characters.
"""

from __future__ import annotations

import random

LANGUAGE_HINTS = ("en", "en-US", "fr-FR", "de", "ja-JP", "ar-SA", "pt-BR", "zh-Hans-CN", "he")

USER_PHRASES = (
    "Hi, I'd like to check the status of my order.",
    "Bonjour, je voudrais réserver une table pour deux à 20 h.",
    "¿Pueden cambiar mi cita al jueves?",
    "我想预约明天下午三点。",
    "予約を変更したいです。",
    "مرحبا، أريد إلغاء طلبي رقم ٤٥٦٧",
    "שלום, מה שעות הפתיחה?",
    "Can you hear me? 🙂",
    "Line one\nline two\n\tindented line three",
    'That\'s "great" — thanks! 👍🏽',
    "Größe 42, Straße: Hauptstraße 5",
    "👩‍👩‍👧 the family plan, please",
    "Привет! Сколько это стоит?",
    "Ok.",
    "backslash \\ quote ' <b>tag</b> & ampersand",
)

AGENT_PHRASES = (
    "Sure, let me look that up for you.",
    "Très bien, c'est noté pour ce soir à 20 h. 🍷",
    "Claro, ¿a qué hora le viene mejor?",
    "好的，已为您预约。",  # noqa: RUF001 - the full-width comma is the point
    "かしこまりました。少々お待ちください。",
    "تم إلغاء الطلب بنجاح.",
    "בשמחה! אנחנו פתוחים עד 22:00.",
    "I found two matches:\n1. Order #A-1042\n2. Order #A-1043",
    "Is there anything else I can help with? 😊",
    "The total is €42.50 (tax included).",
    "Ich verbinde Sie jetzt mit einem Kollegen.",
)

OLD_REVISION_PHRASES = USER_PHRASES[:8] + AGENT_PHRASES[:6]

TOOL_NAMES = ("lookupOrder", "transferCall", "hangUp", "queryCorpus", "réserverTable")

SYSTEM_PROMPTS = (
    "You are a friendly assistant for Café Zoë. Answer in the caller's language.",
    "Vous êtes l'agent d'accueil de l'hôtel « Les Écrins ». Soyez bref.",
    "あなたは予約受付のアシスタントです。丁寧に話してください。",
    "You help customers track orders.\nNever reveal internal IDs.\nUse {{customerName}} if known.",
    "أنت مساعد خدمة العملاء. كن مهذبا.",
)

SUMMARIES = (
    ("Order status checked.", "The caller asked about order A-1042; it ships tomorrow."),
    ("Table booked 🍽️", "Réservation pour deux personnes à 20 h, confirmée par SMS."),
    ("予約変更", "お客様は予約を木曜日に変更しました。"),
    ("Cancelled order", "The caller cancelled order ٤٥٦٧ and asked for a refund.\nRefund issued."),
)

END_REASONS = ("hangup", "agent_hangup", "timeout", "connection_error", "system_error")
END_REASON_WEIGHTS = (50, 30, 10, 6, 4)


def weighted_end_reason(rng: random.Random) -> str:
    return rng.choices(END_REASONS, weights=END_REASON_WEIGHTS)[0]


def billing_status(rng: random.Random, end_reason: str) -> str:
    if end_reason == "unjoined":
        return "BILLING_STATUS_FREE_ZERO_EFFECTIVE_DURATION"
    if end_reason == "system_error":
        return "BILLING_STATUS_FREE_SYSTEM_ERROR"
    return "BILLING_STATUS_FREE_CONSOLE" if rng.random() < 0.1 else "BILLING_STATUS_BILLED"


def seconds(value: float) -> str:
    """A protobuf-style duration: "63s", "12.5s" (no trailing zeros)."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def system_prompt(rng: random.Random) -> str:
    return rng.choice(SYSTEM_PROMPTS)


def summaries(rng: random.Random) -> tuple[str, str]:
    return rng.choice(SUMMARIES)


def agent_name(rng: random.Random) -> str:
    return rng.choice(("Réception", "Order desk", "受付", "Support 24/7"))


def metadata(rng: random.Random) -> dict[str, str]:
    pool = (("customer", "Zoë Núñez"), ("crm_id", "A-1042"), ("campagne", "été-2026"), ("ref", "注文-17"))
    return dict(rng.sample(pool, rng.choice((0, 0, 1, 2, 3))))


def inactivity_messages(rng: random.Random) -> list[dict[str, str]]:
    if rng.random() < 0.5:
        return []
    return [{"duration": "30s", "message": "Are you still there?", "endBehavior": "END_BEHAVIOR_UNSPECIFIED"}]


def utterance(rng: random.Random, phrases: tuple[str, ...]) -> str:
    """One to three phrases, sometimes split over lines, rarely empty.

    Plain `random()` arithmetic rather than `sample`/`choice`: a 50,000-call truth dump builds a
    million of these.
    """
    roll, count = rng.random(), len(phrases)
    if roll < 0.01:
        return ""
    text = phrases[int(rng.random() * count)]
    if roll > 0.6:
        text += ("\n" if roll > 0.8 else " ") + phrases[int(rng.random() * count)]
    if roll > 0.9:
        text += " " + phrases[int(rng.random() * count)]
    return text
