"""From files to chunks: loaders, page-chrome cleaning, sentence-aware chunking."""
