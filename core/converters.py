"""Path converters for addresses that name a calendar month: a year and a
month that do not exist answer 404 at the router instead of a ValueError
(a 500) in the view. Registered once, in core.apps."""


class YearConverter:
    regex = "2[0-9]{3}"  # the exchange's centuries; dt.datetime breaks past 9999

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return f"{value:04d}"


class MonthConverter:
    regex = "1[0-2]|0?[1-9]"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)
