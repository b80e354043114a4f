"""A stand-in for the MojoRust trading bot that behaves like it wherever a disaster-recovery drill looks."""

VERSION = "tradebot 1.0"
