"""SSO configuration from the environment: the rule syntax, and start-up refusing a malformed
or incomplete setting with a message that says what to write."""

import subprocess
import sys

import pytest

from sso.rules import Grant, RuleError, grants_for, rules_parse
from tests.utils.procs import REPO, embedded_env


def test_comma_rules_and_json_rules_read_the_same():
    comma = rules_parse("OIDC_DOMAIN_RULES", "Acme.com=acme:admin, @example.org=example:Viewer,acme.com=labs:viewer",
                        domains=True)
    as_json = rules_parse(
        "OIDC_DOMAIN_RULES", '{"acme.com": ["acme:admin", "labs:viewer"], "example.org": "example:viewer"}',
        domains=True,
    )
    assert comma == as_json == {
        "acme.com": (Grant("acme", "admin"), Grant("labs", "viewer")),
        "example.org": (Grant("example", "viewer"),),
    }
    assert rules_parse("OIDC_GROUP_RULES", "") == {}


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("acme.com", "is not '<domain>=<tenant>:<role>'"),
        ("acme.com=acme", "must map to '<tenant slug>:<role>'"),
        ("acme.com=acme:superuser", "role one of owner, admin, viewer"),
        ("acme.com=Bad Slug:admin", "must map to '<tenant slug>:<role>'"),
        ("not a domain=acme:admin", "is not an email domain"),
        ('{"acme.com": ', "is not valid JSON"),
        ('{"acme.com": 3}', "must be 'tenant:role', 'tenant/project:role' or a list"),
    ],
)
def test_malformed_rules_say_what_is_expected(raw, says):
    with pytest.raises(RuleError, match="OIDC_DOMAIN_RULES") as err:
        rules_parse("OIDC_DOMAIN_RULES", raw, domains=True)
    assert says in str(err.value)


def test_project_grants_read_the_same_in_both_forms_and_the_highest_project_role_wins():
    comma = rules_parse("OIDC_GROUP_RULES",
                        "llm-support=acme/support:Admin,llm-support=acme:viewer,readers=acme/support:viewer")
    as_json = rules_parse("OIDC_GROUP_RULES",
                          '{"llm-support": ["acme/support:admin", "acme:viewer"], "readers": "acme/support:viewer"}')
    assert comma == as_json == {
        "llm-support": (Grant("acme", "admin", "support"), Grant("acme", "viewer")),
        "readers": (Grant("acme", "viewer", "support"),),
    }
    granted = grants_for(email="a@acme.com", email_verified=True, groups=["readers", "llm-support"],
                         domain_rules={}, group_rules=comma)
    assert granted.tenants == {"acme": "viewer"} and granted.projects == {("acme", "support"): "admin"}


@pytest.mark.parametrize(
    "raw",
    [
        "llm-support=acme/support:owner",  # owning is tenant-wide
        "llm-support=acme/support",
        "llm-support=acme/:admin",
        "llm-support=/support:admin",
        "llm-support=acme/Support Team:admin",
        "llm-support=acme/123:admin",  # a number names a project by id, never a slug
        "llm-support=acme/support/extra:admin",
    ],
)
def test_malformed_project_rules_say_what_is_expected(raw):
    with pytest.raises(RuleError, match="OIDC_GROUP_RULES") as err:
        rules_parse("OIDC_GROUP_RULES", raw)
    assert "'<tenant slug>/<project slug>:<role>' (role one of admin, viewer)" in str(err.value)


def test_the_highest_role_wins_and_domains_need_a_verified_email():
    domains = rules_parse("D", "acme.com=acme:viewer", domains=True)
    groups = rules_parse("G", "admins=acme:admin,owners=labs:owner,viewers=labs:viewer")
    both = dict(email="a@ACME.com", groups=["viewers", "owners", "admins"], domain_rules=domains, group_rules=groups)
    assert grants_for(email_verified=True, **both).tenants == {"acme": "admin", "labs": "owner"}
    assert grants_for(email="a@acme.com", email_verified=False, groups=[], domain_rules=domains,
                      group_rules=groups).tenants == {}
    assert grants_for(email="a@acme.com", email_verified=True, groups=[], domain_rules=domains,
                      group_rules=groups).tenants == {"acme": "viewer"}


def _check(tmp_path, **env_vars):
    env = embedded_env(tmp_path, DEBUG="true", **env_vars)
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, env=env, capture_output=True, text=True)


SSO_ENV = {"OIDC_ISSUER": "https://id.acme.com", "OIDC_CLIENT_ID": "tollgate", "OIDC_CLIENT_SECRET": "s"}


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({**SSO_ENV, "OIDC_DOMAIN_RULES": "acme.com=acme:boss"}, "OIDC_DOMAIN_RULES: 'acme.com=acme:boss' must map"),
        ({**SSO_ENV, "OIDC_GROUP_RULES": "admins"}, "OIDC_GROUP_RULES: 'admins' is not '<group>=<tenant>:<role>'"),
        ({**SSO_ENV, "OIDC_GROUP_RULES": "llm-support=acme/support:owner"},
         "OIDC_GROUP_RULES: 'llm-support=acme/support:owner' must map"),
        ({**SSO_ENV, "OIDC_DOMAIN_RULES": '{"acme.com": "acme/Help Desk:viewer"}'},
         "OIDC_DOMAIN_RULES: 'acme.com=acme/Help Desk:viewer' must map"),
        ({**SSO_ENV, "OIDC_SESSION_SECONDS": "60"}, "OIDC_SESSION_SECONDS must be at least 300"),
        ({**SSO_ENV, "OIDC_CLIENT_SECRET": ""}, "OIDC_CLIENT_ID and OIDC_CLIENT_SECRET must be set"),
        ({**SSO_ENV, "OIDC_ISSUER": "http://id.acme.com"}, "OIDC_ISSUER must be an https:// URL"),
        ({**SSO_ENV, "OIDC_SCOPES": "email"}, "OIDC_SCOPES must include openid"),
    ],
)
def test_start_up_refuses_a_malformed_sso_setting(tmp_path, env, says):
    result = _check(tmp_path, **env)
    assert result.returncode != 0
    assert says in result.stderr


def test_a_complete_sso_setting_starts_without_reaching_the_issuer(tmp_path):
    # id.acme.invalid cannot resolve: start-up must not need it (discovery waits for the first login)
    result = _check(tmp_path, **{**SSO_ENV, "OIDC_ISSUER": "https://id.acme.invalid",
                                 "OIDC_DOMAIN_RULES": "acme.com=acme:admin", "OIDC_STAFF_GROUP": "ops",
                                 "OIDC_GROUP_RULES": "llm-support=acme/support:admin"})
    assert result.returncode == 0, result.stderr
