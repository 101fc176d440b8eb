"""The bounds of every number a client sends, in one place.

API serializers, page forms, services and the database's CHECK constraints
all read these, so a value one layer accepts the next never refuses with a
500. The limits are generous for a real exchange and small enough that the
products the exchange computes from them stay far inside a 64-bit integer
(PostgreSQL bigint, 9.2e18):

- the dearest lease an order can make: MAX_ORDER_GPUS x MAX_ORDER_HOURS x
  MAX_PRICE_AMOUNT = 4,096 x 2,160 x 10^7 = 8.8e16 minor units, its GPU-seconds
  x price 3.2e17, and a price per PFLOPS-hour (price x 1000 / TFLOPS) stays
  below 10^12;
- a money amount typed by a person (budget, cap, face value, request) is at
  most MAX_AMOUNT = 10^12 minor units (CNY 10 billion), so even 9 million of
  them summed in the ledger fit.

Money is in minor units (fen for CNY). Durations are in hours or days as the
field says. Changing a limit that a CHECK constraint names needs a migration
(`manage.py makemigrations` notices).
"""

import datetime as dt

# --- money ------------------------------------------------------------------------
# Price per GPU-hour: CNY 100,000.00. Real asks are in the tens of yuan.
MAX_PRICE_AMOUNT = 10_000_000
# Any other amount a person types (budgets, caps, face values, requests): CNY 10 billion.
MAX_AMOUNT = 1_000_000_000_000

# --- capacity ---------------------------------------------------------------------
MAX_NODE_GPUS = 64  # GPUs in one server
MAX_OFFER_GPUS = 100_000  # GPUs in one offer (a site's pool of one model)
MAX_ORDER_GPUS = 4_096  # GPUs one order asks for
MAX_MEMORY_GB = 4_096  # a floor on memory per GPU (the largest card has 288 GB)
MAX_CARBON_INTENSITY = 2_000  # gCO2e/kWh (coal is about 1,000)
MAX_PUE = 3  # power usage effectiveness; 1.0 is perfect, old rooms reach ~2.5

# --- time -------------------------------------------------------------------------
MAX_ORDER_HOURS = 24 * 90  # hours one order runs
MAX_LEASE_HOURS = 24 * 366  # an offer's minimum / maximum lease hours
MAX_ORDER_START_AHEAD = dt.timedelta(days=90)  # an order's start-by deadline
MAX_OFFER_AHEAD = dt.timedelta(days=2 * 366)  # how far ahead an offer's window may end
MAX_PROGRAMME_LENGTH = dt.timedelta(days=10 * 366)  # a subsidy programme's validity
MAX_CONTRACT_DAYS = 10 * 366  # a programme's maximum contract term
MAX_DRAIN_NOTICE_MINUTES = 60 * 24 * 30  # notice of a node's maintenance
MAX_ORDER_REFILLS = 100  # times a standing order re-arms after losing a lease

# --- subsidy ----------------------------------------------------------------------
MAX_GPU_HOURS = 100_000_000  # GPU-hours a voucher application expects
MAX_BASIS_POINTS = 10_000  # 100 %

# --- lists --------------------------------------------------------------------------
MAX_BOOK_LEVELS = 50  # price levels shown per side of a public book
MAX_QUOTE_EXCLUSIONS = 200  # offers left out that a quote lists, cheapest first
MAX_LIST_ITEMS = 100  # names in one list field (GPU models, provinces, hubs, vendors)

# --- subsidy trail ------------------------------------------------------------------
MAX_TRAIL_SIZE = 2**40  # leaves of the trail (a tree size, a leaf index, a record id asked for)
MAX_TRAIL_LEAVES_PER_REQUEST = 1_000  # leaves read in one request

# --- prepaid balance and credit (billing/prepaid.py) -----------------------------------
MAX_FUNDING_GRACE_MINUTES = 60 * 24 * 7  # how long leases run on after funds reach zero
MAX_ALERT_THRESHOLDS = 10  # balance alert thresholds a buyer sets
