"""Training recipes beside verl's layout (``recipe/dapo``)."""
