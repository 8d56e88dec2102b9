package config

import (
	"strings"
	"testing"
)

// secretCase is a file whose error must not contain any of leaks (what is
// left of a secret) and must contain each of wants (the message intact).
type secretCase struct {
	name, yaml   string
	leaks, wants []string
}

func checkSecretCases(t *testing.T, cases []secretCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.yaml))
			if err == nil {
				t.Fatal("Parse took the file")
			}
			for _, l := range tc.leaks {
				if strings.Contains(err.Error(), l) {
					t.Errorf("the error repeats %q:\n%v", l, err)
				}
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

const secretsAccount = "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/backupd\n"

// TestWithoutSecretsOverlappingSecrets: a secret that begins another is
// not taken out of the longer one's value, leaving its rest: only a whole
// quoted value is matched. (A secret inside a longer value that is not
// itself a secret takes that whole quoted value; text outside quotes is
// left, as matching it would cut holes in a message's own words; see
// TestWithoutSecretsKeepsMessageWords.)
func TestWithoutSecretsOverlappingSecrets(t *testing.T) {
	checkSecretCases(t, []secretCase{{
		name: "password inside an external_id",
		yaml: "shared_state:\n  backend: redis\n  redis:\n    password: abcdefgh\n    address: localhost:6379\n" +
			"accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/backupd\n" +
			"    external_id: &e abcdefgh-secret-part\n    default_region: *e\n",
		leaks: []string{"secret-part"},
	}})
}

// TestWithoutSecretsReplacesOnce: what replaces a secret is not searched
// for secrets again, so that a secret that is a field's name
// (shared_state) does not nest replacements, which would also tell the
// secret to whoever knows the message.
func TestWithoutSecretsReplacesOnce(t *testing.T) {
	checkSecretCases(t, []secretCase{{
		name:  "password that is a field name",
		yaml:  "shared_state:\n  backend: redis\n  redis:\n    password: &p shared_state\n    address: *p\n" + secretsAccount,
		leaks: []string{"[the value of [the value of", "(the value of [the value of"},
		wants: []string{"got (the value of shared_state.redis.password, not repeated)"},
	}, {
		name: "external_id that names the password",
		yaml: "shared_state:\n  backend: redis\n  redis:\n    password: &p hunter2-not-a-hash\n    address: *p\n" +
			"accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/backupd\n" +
			"    external_id: shared_state.redis.password\n",
		leaks: []string{"[the value of [the value of", "(the value of [the value of"},
		wants: []string{"got (the value of shared_state.redis.password, not repeated)"},
	}})
}

// TestWithoutSecretsKeepsMessageWords: a secret is taken out of the values
// a problem echoes, not out of its field names or its own words: a hole in
// a known message ("such as [the value of ...]") tells the secret as well
// as the secret would.
func TestWithoutSecretsKeepsMessageWords(t *testing.T) {
	checkSecretCases(t, []secretCase{{
		name:  "password in the message's words",
		yaml:  "shared_state:\n  backend: redis\n  redis:\n    password: must be host\n    address: nohost\n" + secretsAccount,
		wants: []string{`shared_state.redis.address: must be host:port for backend redis; got "nohost"`},
	}, {
		name:  "password that is a field name",
		yaml:  "shared_state:\n  backend: redis\n  redis:\n    password: shared_state\n    address: nohost\n" + secretsAccount,
		wants: []string{`shared_state.redis.address: must be host:port for backend redis; got "nohost"`},
	}, {
		name: "external_id that is the example region",
		yaml: "accounts:\n  - id: \"111111111111\"\n    role_arn: arn:aws:iam::111111111111:role/backupd\n" +
			"    external_id: us-east-1\n    default_region: nowhere\n",
		wants: []string{`accounts[0].default_region: must be an AWS region such as us-east-1; got "nowhere"`},
	}, {
		name:  "external_id that is the example role",
		yaml:  "accounts:\n  - id: \"111111111111\"\n    role_arn: nope\n    external_id: role/backupd\n",
		wants: []string{"accounts[0].role_arn: must be an IAM role ARN such as arn:aws:iam::111111111111:role/backupd"},
	}})
}

// TestWithoutSecretsCutValue: yaml quotes a value of more than 10 bytes
// cut to its first 7; a secret of 7 to 10 bytes that begins such a value
// is taken out of the cut too, and so is a cut that ends in a secret's
// start (the secret pasted after other text).
func TestWithoutSecretsCutValue(t *testing.T) {
	checkSecretCases(t, []secretCase{{
		name:  "9-byte password beginning a longer value",
		yaml:  "shared_state:\n  backend: redis\n  redis:\n    password: hunter2xy\n    address: localhost:6379\n    db: hunter2xy-1\n" + secretsAccount,
		leaks: []string{"hunter"},
		wants: []string{"shared_state.redis.db: must be a whole number"},
	}, {
		name:  "password after one character",
		yaml:  "shared_state:\n  backend: redis\n  redis:\n    password: s3cretPassw0rd\n    address: localhost:6379\n    db: xs3cretPassw0rd\n" + secretsAccount,
		leaks: []string{"s3cre", "3cret"},
		wants: []string{"shared_state.redis.db: must be a whole number"},
	}, {
		name:  "password after two characters",
		yaml:  "shared_state:\n  backend: redis\n  redis:\n    password: s3cretPassw0rd\n    address: localhost:6379\n    db: abs3cretPassw0rd\n" + secretsAccount,
		leaks: []string{"s3cre", "3cre"},
		wants: []string{"shared_state.redis.db: must be a whole number"},
	}})
}

// TestWithoutSecretsFractionalValue: a password that reads as a number
// with a fraction, put into a whole-number field by an alias, is not
// repeated by the report that it is not whole.
func TestWithoutSecretsFractionalValue(t *testing.T) {
	checkSecretCases(t, []secretCase{{
		name:  "password 31.4159 as db",
		yaml:  "shared_state:\n  backend: redis\n  redis:\n    password: &p 31.4159\n    address: localhost:6379\n    db: *p\n" + secretsAccount,
		leaks: []string{"31.4159", "4159"},
		wants: []string{"shared_state.redis.db: must be a whole number; got (the value of shared_state.redis.password, not repeated)"},
	}})
}
