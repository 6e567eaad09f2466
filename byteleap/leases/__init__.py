"""Leases (SPEC 6): the pure rules shared by miners and validators, starting with receipts."""
