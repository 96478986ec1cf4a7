"""Shared studies: members and their roles, from the command line, the study page and the admin; the
role rules themselves (``access.role_of``, the last owner, the owner of record)."""

import io
import json

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from webapp.crowd import platforms
from webapp.experiments import access
from webapp.experiments.models import Membership

pytestmark = pytest.mark.django_db


def share(*args) -> str:
    out = io.StringIO()
    call_command("share_experiment", *args, stdout=out)
    return out.getvalue()


def roles(exp) -> dict[str, str]:
    return {u.username: r for u, r, _ in access.members(exp)}


def test_share_experiment_command(world, users):
    exp, bob = world.exp, users["bob"]
    assert access.role_of(bob, exp) is None
    assert "bob is viewer of 'exp1'" in share("exp1", "bob", "--role", "viewer")
    assert access.role_of(bob, exp) == "viewer"
    share("exp1", "bob", "--role", "editor")  # a change, not a second row
    assert access.role_of(bob, exp) == "editor" and Membership.objects.filter(user=bob).count() == 1
    assert share("exp1").splitlines() == ["alice\towner (owner of record)", "bob\teditor"]
    assert "bob no longer has a role" in share("exp1", "bob", "--remove")
    assert access.role_of(bob, exp) is None
    for args, said in ((("exp1", "bob", "--remove"), "has no membership"),
                       (("nope", "bob", "--role", "viewer"), "no experiment 'nope'"),
                       (("exp1", "carol", "--role", "viewer"), "no user named 'carol'"),
                       (("exp1", "bob"), "--role"),
                       (("exp1", "alice", "--role", "viewer"), "owner of record")):
        with pytest.raises(CommandError, match=said):
            share(*args)
    with pytest.raises(CommandError):  # argparse: not a role
        share("exp1", "bob", "--role", "admin")
    assert not Membership.objects.exists()
    assert access.role_of(users["alice"], exp) == "owner" and access.role_of(users["root"], exp) == "owner"


def test_the_last_owner_stays(world, users, django_user_model):
    """With no owner of record, the study's one remaining owner can be neither demoted nor removed, from
    the command or the page; a second owner makes either possible."""
    exp, bob = world.exp, users["bob"]
    carol = django_user_model.objects.create_user("carol", password="pw-carol")
    exp.owner = None  # e.g. the researcher's account was deleted
    exp.save(update_fields=["owner"])
    share("exp1", "bob", "--role", "owner")
    for args in (("exp1", "bob", "--role", "editor"), ("exp1", "bob", "--remove")):
        with pytest.raises(CommandError, match="last owner"):
            share(*args)
    c = Client()
    c.force_login(bob)
    r = c.post(reverse("lab:member-remove", args=["exp1"]), {"username": "bob"}, follow=True)
    assert "bob is the study&#x27;s last owner" in r.content.decode()
    c.post(reverse("lab:members", args=["exp1"]), {"username": "bob", "role": "viewer"})
    assert roles(exp) == {"bob": "owner"}
    share("exp1", "carol", "--role", "owner")
    c.post(reverse("lab:member-remove", args=["exp1"]), {"username": "bob"})
    assert roles(exp) == {"carol": "owner"}
    assert access.role_of(bob, exp) is None and access.role_of(carol, exp) == "owner"


def test_members_section_on_the_study_page(world, users, django_user_model):
    """An owner adds a user by name with a role, changes it and removes it; mistakes change nothing."""
    exp = world.exp
    carol = django_user_model.objects.create_user("carol", password="pw-carol")
    c = Client()
    c.force_login(users["alice"])
    url, remove = reverse("lab:members", args=["exp1"]), reverse("lab:member-remove", args=["exp1"])
    r = c.post(url, {"username": "bob", "role": "viewer"})
    assert r.status_code == 302 and r["Location"].endswith("#members")
    assert Membership.objects.get(user=users["bob"]).added_by == users["alice"]
    page = c.get(reverse("lab:experiment", args=["exp1"])).content.decode()
    assert "<td>bob</td><td>viewer</td>" in page and "<td>alice</td><td>owner (owner of record)</td>" in page
    c.post(url, {"username": "bob", "role": "editor"})
    c.post(url, {"username": "carol", "role": "owner"})
    assert roles(exp) == {"alice": "owner", "bob": "editor", "carol": "owner"}
    for data, said in (({"username": "dave", "role": "viewer"}, "no user named &#x27;dave&#x27;"),
                       ({"username": "bob", "role": "admin"}, "role must be one of viewer, editor, owner"),
                       ({"username": "", "role": "viewer"}, "no user named"),
                       ({"username": "alice", "role": "viewer"}, "owner of record")):
        r = c.post(url, data, follow=True)
        assert said in r.content.decode(), data
    r = c.post(remove, {"username": "dave"}, follow=True)
    assert "not a member of this study" in r.content.decode()
    assert roles(exp) == {"alice": "owner", "bob": "editor", "carol": "owner"}
    c.post(remove, {"username": "bob"})
    assert roles(exp) == {"alice": "owner", "carol": "owner"}
    # carol, an owner by membership, manages members as alice does
    c.force_login(carol)
    c.post(url, {"username": "bob", "role": "viewer"})
    assert roles(exp)["bob"] == "viewer" and Membership.objects.get(user=users["bob"]).added_by == carol
    assert c.get(url).status_code == 405  # the forms only post


def test_create_experiment_shares(db, users, tmp_path):
    from webapp.experiments.models import Experiment

    path = tmp_path / "s.json"
    path.write_text(json.dumps({"slug": "shared", "title": "Shared", "codecs": ["jpeg:10"]}))
    call_command("create_experiment", str(path), owner="alice", member=["bob:editor", "root:viewer"],
                 stdout=io.StringIO())
    exp = Experiment.objects.get(slug="shared")
    assert roles(exp) == {"alice": "owner", "bob": "editor", "root": "viewer"}
    assert access.role_of(users["root"], exp) == "owner"  # a superuser is an owner whatever the row says
    for bad, said in ((["bob:admin"], "expected USER:ROLE"), (["carol:viewer"], "no user named 'carol'")):
        path.write_text(json.dumps({"slug": "shared2", "title": "S", "codecs": ["jpeg:10"]}))
        with pytest.raises(CommandError, match=said):
            call_command("create_experiment", str(path), owner="alice", member=bad, stdout=io.StringIO())
        assert not Experiment.objects.filter(slug="shared2").exists()


def test_experiments_for_needs_and_roles(world, users):
    exp, bob = world.exp, users["bob"]
    access.set_role(exp, bob, "editor")
    assert [e.user_role for e in access.experiments_for(bob)] == ["editor"]
    assert access.experiments_for(bob, "editor").count() == 1
    assert access.experiments_for(bob, "owner").count() == 0
    assert access.experiment_for(bob, "exp1", "editor").user_role == "editor"
    with pytest.raises(access.RoleTooLow, match="needs the owner role on the study; yours is editor"):
        access.experiment_for(bob, "exp1", "owner")
    from django.http import Http404

    with pytest.raises(Http404):
        access.experiment_for(users["bob"], "nope")
    with pytest.raises(ValueError):
        access.experiments_for(bob, "admin")
    paid = platforms.for_experiment(exp).driven_from_lab
    assert not paid and access.status_need("live", paid) == "editor"  # an open link: nothing is paid
    exp.platform = "mturk"
    paid = platforms.for_experiment(exp).driven_from_lab
    assert paid and access.status_need("live", paid) == "owner"
    assert access.status_need("paused", paid) == "editor"


def test_admin_follows_roles(world, users):
    """A staff researcher with the admin's permissions lists the rows of the studies he holds any role on,
    and may change or delete them, or add rows to a study, only as an owner."""
    exp, bob = world.exp, users["bob"]
    bob.is_staff = True
    bob.save(update_fields=["is_staff"])
    bob.user_permissions.add(*Permission.objects.filter(
        content_type__app_label__in=["experiments", "crowd"],
        codename__regex=r"^(view|change|delete|add)_"))
    world.participant("p1")
    c = Client()
    c.force_login(bob)
    listing = "/admin/experiments/experiment/"
    change = f"/admin/experiments/experiment/{exp.pk}/change/"
    assert exp.slug.encode() not in c.get(listing).content
    assert c.get(change).status_code == 302  # "does not exist"
    assert b"PID-p1" not in c.get("/admin/crowd/participant/").content
    access.set_role(exp, bob, "viewer")
    assert exp.slug.encode() in c.get(listing).content
    assert b"PID-p1" in c.get("/admin/crowd/participant/").content  # crowd admin: derived from owner_field
    page = c.get(change)
    assert page.status_code == 200 and b'name="title"' not in page.content  # read only
    r = c.post(change, {"slug": exp.slug, "title": "renamed", "status": "closed"})
    assert r.status_code == 403
    exp.refresh_from_db()
    assert exp.title != "renamed"
    members = c.get("/admin/experiments/membership/")  # read-only, the studies he holds a role on
    assert members.status_code == 200 and b"viewer" in members.content
    assert c.get("/admin/experiments/membership/add/").status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [exp.pk], "post": "yes"}
    assert c.post(listing, bulk).status_code == 403
    assert f'<option value="{exp.pk}"'.encode() not in c.get("/admin/experiments/trial/add/").content
    assert type(exp).objects.filter(pk=exp.pk).exists()
    access.set_role(exp, bob, "owner")
    assert b'name="title"' in c.get(change).content
    assert f'<option value="{exp.pk}"'.encode() in c.get("/admin/experiments/trial/add/").content
