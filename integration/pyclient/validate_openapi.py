"""Validates an OpenAPI 2.0 (Swagger) description, as REST client
generators read it, with openapi-spec-validator (installed with moto).

Usage: python validate_openapi.py FILE
"""

import json
import sys

from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV2SpecValidator

with open(sys.argv[1]) as f:
    spec = json.load(f)
validate(spec, cls=OpenAPIV2SpecValidator)
print("valid OpenAPI %s: %d paths, %d definitions" % (spec["swagger"], len(spec["paths"]), len(spec["definitions"])))
