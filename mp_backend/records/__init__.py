"""Records: ledger entries as members and the merchant read them."""
