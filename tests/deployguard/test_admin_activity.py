"""The activity page: a server-side SVG chart of rows created and changed by origin, a table, a range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from deployguard.admin import activity as page
from tests.deployguard.admin_support import ACTIVITY
from tests.deployguard.test_activity import DAY, plant
from tests.factories import DeployRecordFactory

pytestmark = pytest.mark.django_db

RANGE = {"start": "2026-03-04", "end": "2026-03-04", "bucket": "hour", "what": "all"}


def chart_svg(body: str) -> str:
    return body.split('id="activity-chart"')[1].split("<svg")[1].split("</svg>")[0]


def test_a_planted_spike_is_the_tallest_bar_described_and_tabulated(operator_client, superuser):
    plant(
        1,
        label="request:POST /admin/documents/submission/add/",
        at=DAY + timedelta(hours=10),
        actor=superuser,
    )
    plant(
        8, label="command:seed_demo pid=1 host=x", at=DAY + timedelta(hours=14, minutes=20), actor=superuser
    )

    body = operator_client.get(ACTIVITY, RANGE).content.decode()

    svg = chart_svg(body)
    assert 'role="img" aria-labelledby="activity-title activity-desc"' in svg
    assert "<title>4 Mar 2026 14:00 to 15:00 UTC: 8 rows (8 by command)</title>" in svg
    assert 'class="series-command"' in svg and 'data-rows="8"' in svg
    assert "Peak: 8 in 4 Mar 2026 14:00 to 15:00 UTC (8 by command)." in body
    table = body.split('id="activity-table"')[1].split("</table>")[0]
    assert table.count("<tr>") == 3  # the header, 10:00 and 14:00
    spike = table.split("4 Mar 2026 14:00 to 15:00 UTC</th>")[1].split("</tr>")[0]
    assert spike.split('<td class="numeric">')[1:] == [
        "0</td>",
        "8</td>",
        "0</td>",
        "0</td>",
        "0</td>",
        "8</td>",
    ]


def test_the_spike_bar_is_eight_times_as_tall_as_the_single_row_bar(operator_client, superuser):
    plant(1, label="request:POST /x/", at=DAY + timedelta(hours=10), actor=superuser)
    plant(8, label="command:seed_demo", at=DAY + timedelta(hours=14), actor=superuser)

    svg = chart_svg(operator_client.get(ACTIVITY, RANGE).content.decode())
    heights = {
        rows: float(rect.split('height="')[1].split('"')[0])
        for rect in svg.split("<rect ")[1:]
        if 'data-rows="' in rect
        for rows in [rect.split('data-rows="')[1].split('"')[0]]
    }

    assert heights["8"] == pytest.approx(8 * heights["1"])


def test_deploy_windows_are_shaded(operator_client):
    DeployRecordFactory(
        deploy_id="d-7", started_at=DAY + timedelta(hours=9), finished_at=DAY + timedelta(hours=9, minutes=3)
    )

    body = operator_client.get(ACTIVITY, RANGE).content.decode()

    assert '<g class="deploy-window"><title>deploy d-7 (succeeded)</title>' in body
    assert "1 deploy window shaded." in body


def test_the_default_range_is_the_last_seven_days_by_hour(operator_client):
    response = operator_client.get(ACTIVITY)

    assert response.status_code == 200
    today = datetime.now(UTC).date()
    assert response.context["form"].cleaned_data["start"] == today - timedelta(days=6)
    assert len(response.context["activity"].buckets()) == 7 * 24


@pytest.mark.parametrize(
    ("asked", "error"),
    [
        ({"start": "2026-03-05", "end": "2026-03-04"}, page.BACKWARDS),
        (
            {"start": "2026-01-01", "end": "2026-03-04", "bucket": "hour"},
            page.TOO_LONG.format(bucket="Hourly", days=31, other="daily"),
        ),
        (
            {"start": "1990-01-01", "end": "2026-03-04", "bucket": "day"},
            page.TOO_LONG.format(bucket="Daily", days=731, other="hourly"),
        ),
        (
            {"start": "0001-01-01", "end": "0001-01-02", "bucket": "day"},
            page.OUT_OF_RANGE.format(earliest=page.EARLIEST, latest=page.LATEST),
        ),
        (
            {"start": "9999-12-30", "end": "9999-12-31", "bucket": "day"},
            page.OUT_OF_RANGE.format(earliest=page.EARLIEST, latest=page.LATEST),
        ),
    ],
)
def test_impossible_or_huge_ranges_are_refused_with_a_message_and_nothing_is_counted(
    operator_client, asked, error
):
    response = operator_client.get(ACTIVITY, {**RANGE, **asked})

    assert response.status_code == 400
    assert error in response.content.decode()
    assert response.context["chart"] is None


@pytest.mark.parametrize(
    "asked", [{"start": "yesterday"}, {"bucket": "minute"}, {"what": "<script>"}, {"end": "\x00"}]
)
def test_garbage_in_the_address_gets_a_400_not_a_500(operator_client, asked):
    response = operator_client.get(ACTIVITY, {**RANGE, **asked})

    assert response.status_code == 400
    assert "<script>" not in response.content.decode().split('id="activity-errors"')[1]


def test_staff_without_the_view_permission_get_403(staff_client):
    assert staff_client.get(ACTIVITY).status_code == 403
