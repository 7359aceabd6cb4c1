"""Mirrors modules/errors.py: ``report`` logs an exception and lets the caller go on."""
import logging
import traceback

reported: list[str] = []


def report(message, *, exc_info=False):
    reported.append(message + ("\n" + traceback.format_exc() if exc_info else ""))
    logging.getLogger("standin.errors").error(message, exc_info=exc_info)
