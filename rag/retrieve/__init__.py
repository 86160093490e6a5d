"""From a question to ranked passages: dense and lexical search, fusion, question analysis."""
