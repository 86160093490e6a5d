"""Language analysis shared by every stage: tokens, folding, stemming, compounds, sentences."""
