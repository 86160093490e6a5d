"""Where chunks live: document store, vector store and lexical index, tied together by Index."""
