"""Word lists and weights behind the synthetic BLADE data (fleet, bases, parts, texts).

Plain data only; ``generator`` turns it into SQL. Weights are relative (they need not sum to 1).
Lists of bases are ordered busiest first: the generator spreads activity over them Zipf-like.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AircraftType:
    """One mission design series: fleet share, tail-number years, home bases, sortie profile."""

    name: str
    fleet_weight: float
    years: tuple[int, int]  # fiscal years of the serials (two digits come from these)
    bases: tuple[str, ...]
    sortie_hours: tuple[float, float]  # typical flight duration range
    missions: dict[str, float]
    fmc_rate: float  # share of daily readiness reports that are FMC


AIRCRAFT_TYPES: tuple[AircraftType, ...] = (
    AircraftType("F-16C", 30, (1984, 1995),
                 ("Shaw AFB", "Hill AFB", "Luke AFB", "Nellis AFB", "Eielson AFB",
                  "Spangdahlem AB", "Aviano AB", "Kunsan AB", "Osan AB", "Misawa AB"),
                 (1.0, 2.5), {"TRAINING": 70, "COMBAT": 12, "TEST": 5, "ISR": 3}, 0.72),
    AircraftType("F-15E", 10, (1986, 2004),
                 ("Seymour Johnson AFB", "Mountain Home AFB", "RAF Lakenheath", "Nellis AFB"),
                 (1.2, 3.0), {"TRAINING": 68, "COMBAT": 20, "TEST": 4}, 0.70),
    AircraftType("C-17A", 12, (1990, 2008),
                 ("JB Charleston", "JB Lewis-McChord", "Travis AFB", "Dover AFB",
                  "JB Elmendorf-Richardson", "JB Pearl Harbor-Hickam", "Altus AFB", "March ARB"),
                 (2.0, 14.0), {"TRANSPORT": 75, "TRAINING": 22, "TEST": 1}, 0.80),
    AircraftType("KC-135R", 18, (1957, 1964),
                 ("Fairchild AFB", "MacDill AFB", "McConnell AFB", "RAF Mildenhall",
                  "Kadena AB", "Grand Forks AFB"),
                 (3.0, 8.0), {"REFUEL": 78, "TRAINING": 20, "TRANSPORT": 2}, 0.75),
    AircraftType("A-10C", 12, (1978, 1984),
                 ("Davis-Monthan AFB", "Moody AFB", "Whiteman AFB", "Osan AB", "Nellis AFB"),
                 (1.0, 3.0), {"TRAINING": 72, "COMBAT": 25, "TEST": 3}, 0.74),
    AircraftType("B-52H", 4, (1960, 1962),
                 ("Barksdale AFB", "Minot AFB", "Edwards AFB"),
                 (4.0, 20.0), {"TRAINING": 70, "COMBAT": 20, "TEST": 6}, 0.62),
    AircraftType("C-130J", 10, (1996, 2021),
                 ("Little Rock AFB", "Dyess AFB", "Ramstein AB", "Yokota AB", "Keesler AFB"),
                 (1.0, 6.0), {"TRANSPORT": 55, "TRAINING": 40, "ISR": 3}, 0.78),
    AircraftType("HH-60W", 4, (2019, 2023),
                 ("Moody AFB", "Davis-Monthan AFB", "Nellis AFB", "Kadena AB",
                  "JB Elmendorf-Richardson"),
                 (0.5, 3.0), {"TRAINING": 70, "COMBAT": 15, "ISR": 10, "TEST": 5}, 0.68),
)

#: Aircraft in the synthetic fleet (tail numbers are unique, fixed for every seed).
FLEET_SIZE = 2400

CLASSIFICATION = {"UNCLASS": 96, "CUI": 4}

# --- maintenance -------------------------------------------------------------------------------
MAINT_TYPES = {"SCHEDULED": 35, "UNSCHEDULED": 30, "INSPECTION": 20, "TCTO": 8, "MODIFICATION": 7}
#: median labor hours per maint_type (log-normal spread around it)
MAINT_LABOR_MEDIAN = {"SCHEDULED": 6.0, "UNSCHEDULED": 4.0, "INSPECTION": 2.0, "TCTO": 12.0,
                      "MODIFICATION": 40.0}
PRIORITIES = ("HIGH", "MEDIUM", "LOW")
PRIORITY_UNSCHEDULED = {"HIGH": 35, "MEDIUM": 45, "LOW": 20}
PRIORITY_OTHER = {"HIGH": 8, "MEDIUM": 52, "LOW": 40}
MAINT_STATUSES = ("OPEN", "IN_PROGRESS", "DEFERRED", "COMPLETED", "CANCELLED")
#: status mix of records touched in the last RECENT_DAYS days vs. older ones
RECENT_DAYS = 21
MAINT_STATUS_RECENT = {"OPEN": 28, "IN_PROGRESS": 24, "DEFERRED": 8, "COMPLETED": 38,
                       "CANCELLED": 2}
MAINT_STATUS_OLD = {"OPEN": 2, "IN_PROGRESS": 1, "DEFERRED": 5, "COMPLETED": 87, "CANCELLED": 5}

COMPONENTS = (
    "No. 1 engine", "No. 2 engine", "left main landing gear", "right main landing gear",
    "nose landing gear", "brake assembly", "main fuel pump", "fuel quantity indicator",
    "hydraulic pump", "canopy seal", "ejection seat", "radar antenna", "UHF radio",
    "IFF transponder", "INS/GPS unit", "flight control computer", "aileron actuator",
    "rudder actuator", "ECS pack", "oxygen regulator", "generator control unit",
    "starter/generator", "bleed air valve", "pitot-static probe", "wheel well wiring",
)
SYSTEMS = (
    "hydraulic system A", "hydraulic system B", "fuel system", "electrical system",
    "environmental control system", "flight controls", "avionics", "landing gear system",
    "oxygen system", "fire suppression system", "engine oil system", "navigation system",
)
FAULTS = (
    "leaking", "fails BIT", "intermittent", "inoperative", "exceeds wear limits",
    "chafed wiring found", "corrosion found", "abnormal vibration", "overtemp indication",
    "erratic readings",
)
ACTIONS = (
    "removed and replaced", "repaired IAW T.O.", "troubleshoot in progress",
    "adjusted, ops check good",
    "cannibalized from spare", "sent to back shop", "awaiting parts",
)
#: description templates per maint_type; placeholders: component, system, fault, action,
#: phase_hours, tcto_number
MAINT_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "SCHEDULED": (
        "{phase_hours}-hour phase inspection",
        "Time change: {component}",
        "Scheduled servicing of {system}",
        "Lubrication of {component}",
        "Calibration check of {system}",
    ),
    "UNSCHEDULED": (
        "{component} {fault}; {action}",
        "Pilot reported {system} {fault}",
        "{system} {fault} during post-flight; {action}",
    ),
    "INSPECTION": (
        "Basic post-flight inspection",
        "Pre-flight inspection",
        "Hourly post-flight inspection",
        "Isochronal inspection of {system}",
        "Corrosion inspection of {component}",
    ),
    "TCTO": (
        "TCTO {tcto_number}: {component} modification",
        "TCTO {tcto_number}: one-time inspection of {system}",
    ),
    "MODIFICATION": (
        "Install Link 16 terminal upgrade",
        "Install {system} upgrade kit",
        "Structural modification of {component} area",
        "Install new {component}",
    ),
}

# --- sortie ------------------------------------------------------------------------------------
MISSION_TYPES = ("TRAINING", "COMBAT", "TRANSPORT", "REFUEL", "ISR", "TEST")
SORTIE_STATUS = {"COMPLETED": 82, "CANCELLED": 8, "ABORTED": 3, "SCHEDULED": 7}

# --- supply ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SupplyClass:
    """Federal supply class: share of part numbers, item names, cost and stock levels."""

    fsc: str
    weight: float
    items: tuple[str, ...]
    median_cost: float  # USD
    median_stock: float  # typical quantity on hand


SUPPLY_CLASSES: tuple[SupplyClass, ...] = (
    SupplyClass("5305", 20, ("SCREW,MACHINE", "SCREW,CAP,HEXAGON HEAD", "SCREW,TAPPING"),
                2.5, 400),
    SupplyClass("5310", 16, ("NUT,SELF-LOCKING,HEXAGON", "WASHER,FLAT", "NUT,PLAIN,CASTELLATED"),
                1.2, 500),
    SupplyClass("5330", 14, ("O-RING", "GASKET", "PACKING,PREFORMED", "SEAL,PLAIN"), 6.0, 250),
    SupplyClass("5995", 8, ("CABLE ASSEMBLY,SPECIAL PURPOSE,ELECTRICAL", "WIRING HARNESS"),
                850.0, 12),
    SupplyClass("1560", 7, ("PANEL,STRUCTURAL", "DOOR,ACCESS", "FAIRING", "RIB,WING"),
                4_500.0, 4),
    SupplyClass("4720", 6, ("HOSE ASSEMBLY,NONMETALLIC", "HOSE ASSEMBLY,METAL"), 320.0, 20),
    SupplyClass("1650", 5, ("PUMP,HYDRAULIC", "VALVE,SOLENOID", "ACCUMULATOR,HYDRAULIC",
                            "FILTER ELEMENT,FLUID"), 2_800.0, 6),
    SupplyClass("1620", 4, ("BRAKE ASSEMBLY", "WHEEL,LANDING GEAR", "STRUT,SHOCK ABSORBER",
                            "ACTUATOR,LANDING GEAR"), 9_000.0, 5),
    SupplyClass("6610", 4, ("INDICATOR,ATTITUDE", "ALTIMETER,PRESSURE", "INDICATOR,AIRSPEED"),
                6_500.0, 3),
    SupplyClass("6685", 3, ("TRANSMITTER,PRESSURE", "THERMOCOUPLE", "SWITCH,PRESSURE"),
                700.0, 10),
    SupplyClass("6130", 3, ("POWER SUPPLY", "INVERTER,STATIC", "CONVERTER,FREQUENCY"),
                5_200.0, 3),
    SupplyClass("6140", 2, ("BATTERY,STORAGE", "BATTERY,NONRECHARGEABLE"), 900.0, 15),
    SupplyClass("5895", 3, ("RECEIVER-TRANSMITTER", "ANTENNA", "CONTROL,RADIO SET"),
                18_000.0, 2),
    SupplyClass("2915", 2, ("PUMP,FUEL,ENGINE DRIVEN", "CONTROL,MAIN FUEL", "MANIFOLD,FUEL"),
                24_000.0, 2),
    SupplyClass("2840", 3, ("BLADE,TURBINE ROTOR", "VANE,COMPRESSOR", "NOZZLE,FUEL INJECTION",
                            "SEAL,LABYRINTH"), 12_000.0, 6),
    SupplyClass("9150", 3, ("LUBRICATING OIL,TURBINE ENGINE", "GREASE,AIRCRAFT AND INSTRUMENT"),
                45.0, 120),
)
#: NATO country codes inside the NSN (01/00 = United States)
NSN_COUNTRY = {"01": 70, "00": 15, "21": 4, "12": 4, "99": 3, "14": 2, "66": 2}
SUPPLY_DEPOTS = (
    "DLA Distribution Warner Robins", "DLA Distribution Oklahoma City", "DLA Distribution Hill",
    "DLA Distribution San Joaquin", "DLA Distribution Susquehanna", "Tinker AFB", "Robins AFB",
)
CONDITION_CODES = {"A": 80, "B": 5, "C": 3, "D": 2, "E": 2, "F": 5, "G": 1, "H": 2}

# --- readiness ---------------------------------------------------------------------------------
READINESS_REASONS: dict[str, tuple[str, ...]] = {
    "PMC": (
        "PMCM - {system} degraded",
        "PMCS - awaiting {component}",
        "PMCM - {component} {fault}",
    ),
    "NMC": (
        "NMCM - {component} {fault}",
        "NMCS - awaiting parts: {component} (MICAP)",
        "NMCB - {system} maintenance, parts on order",
        "NMCM - scheduled {phase_hours}-hour phase inspection",
    ),
}

# --- activity profile per table (weekday weights Mon..Sun, hour-of-day weights 0..23) ------------
WEEKDAY_WEIGHTS: dict[str, tuple[float, ...]] = {
    "maintenance": (1.0, 1.05, 1.05, 1.0, 0.9, 0.35, 0.25),
    "sortie": (1.0, 1.1, 1.1, 1.05, 0.85, 0.15, 0.1),
    "supply": (1.0, 1.0, 1.0, 1.0, 0.85, 0.2, 0.1),
    "readiness": (1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.8),
}
HOUR_WEIGHTS: dict[str, tuple[float, ...]] = {
    # two-shift flight line: day shift peak, a swing shift, little at night
    "maintenance": (1, 1, 1, 1, 1, 2, 5, 9, 11, 11, 10, 8, 7, 10, 10, 9, 8, 6, 5, 5, 4, 3, 2, 1),
    # last_modified of a sortie follows landing: afternoons and evenings
    "sortie": (1, 0.5, 0.5, 0.5, 0.5, 1, 2, 3, 5, 7, 9, 10, 10, 10, 10, 10, 9, 8, 7, 6, 4, 3, 2, 1),
    "supply": (0.3, 0.2, 0.2, 0.2, 0.3, 1, 4, 9, 11, 11, 10, 8, 7, 10, 10, 8, 5, 2, 1, 1, 0.5,
               0.5, 0.3, 0.3),
    # morning status report
    "readiness": (1, 1, 1, 1, 2, 6, 12, 14, 10, 5, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1),
}
