"""The synthetic galaxy generator (:mod:`.synthetic`) and its realism statistics."""
