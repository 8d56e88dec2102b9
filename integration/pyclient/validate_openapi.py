"""Validates an OpenAPI 2.0 (Swagger) description, as REST client
generators read it, with openapi-spec-validator (installed with moto).

Usage: python validate_openapi.py FILE
Exits 0 when FILE is valid, 3 when the validator refuses it.
"""

import json
import sys

from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV2SpecValidator

from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

INVALID = 3  # the exit status for a description the validator refuses

with open(sys.argv[1]) as f:
    spec = json.load(f)
try:
    validate(spec, cls=OpenAPIV2SpecValidator)
except OpenAPIValidationError as e:
    print("invalid: %s" % e.message)
    sys.exit(INVALID)
print("valid OpenAPI %s: %d paths, %d definitions" % (spec["swagger"], len(spec["paths"]), len(spec["definitions"])))
