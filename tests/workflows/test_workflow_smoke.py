from datetime import timedelta

import pytest

from adapters.domain import BillingInterval, EnrollmentStatus, ProductPlan
from tests.support.temporal_env import add_product, running_worker


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_monthly_enrollment_rolls_periods(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "p1", ProductPlan(billing_interval=BillingInterval.MONTHS))
    async with running_worker(env, database_url) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="p1", user_id="u1", timezone="Europe/Zurich")
        view = await client.get_enrollment(enrollment_id)
        assert view.status is EnrollmentStatus.ACTIVE
        assert len(view.periods) == 1
        await env.sleep(timedelta(days=95))
        view = await client.get_enrollment(enrollment_id)
        assert len(view.periods) == 4
        assert len(view.orders) == 4
        assert await client.is_valid_for_activation(enrollment_id, view.periods[-1].start)
