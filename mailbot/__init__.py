"""mailbot: reads, files and answers the mail of BOSA's ePayment onboarding process."""

__version__ = "0.1.0"
