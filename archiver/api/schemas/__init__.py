"""marshmallow schemas, one module per API domain; they validate requests and document them in OpenAPI."""
