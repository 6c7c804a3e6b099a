"""The optional LLM filter: chunk clean documents, ask an OpenAI-compatible endpoint to keep/reject and
strip leftover boilerplate, and use an answer only where it is faithful to the input."""
